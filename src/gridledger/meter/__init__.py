"""The meter daemon (layer 3, above ``node`` and ``twin``): SmartPi measurements from MQTT become signed, encrypted
readings submitted to the meter's NAN node through a durable outbox (``gridledger meter run``)."""
