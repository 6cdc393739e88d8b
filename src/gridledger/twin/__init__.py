"""The digital-twin framework (DTFC) of Olivares-Rojas et al. 2023, section 4.5.

A controller maps each physical device to its virtual replica (the paper's JSON mapping), keeps both in sync,
stores every sensor value, raises events and alarms, and drives automated attack scenarios. "Physical" devices
are separate processes that speak MQTT (SmartPi message shape) to a real mosquitto broker; every message is
signed (Ed25519) and encrypted (AES-GCM-128).
"""
