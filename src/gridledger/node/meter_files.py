"""A meter daemon's folder (``gridledger meter run --config``): its configuration, key files, genesis and, on a secure
network, its MQTT device certificate. ``gridledger meter init`` (a local cluster) and the deployment plan
(:mod:`gridledger.node.deploy`) both write it here, below the daemon that reads it (:class:`gridledger.meter.daemon
.MeterConfig`); every path in the configuration is relative to it, so the folder can be copied anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridledger.node.pki import LocalCA, write_private


@dataclass(frozen=True)
class MeterFiles:
    """What a meter daemon needs: its identity on its NAN chain, where it submits, where it reads."""

    meter: str
    member: int  # its member index on the chain (enrolment order)
    key_seed: bytes  # Ed25519 seed: signs readings and API requests (the meter's node key)
    content_key: bytes  # its member content key: encrypts readings
    genesis: bytes  # the chain's genesis block
    node: str  # the node API URL it submits to
    node_name: str  # that node's id (a comment in the file)
    broker_host: str
    broker_port: int
    topic: str  # the topic its meter board publishes on
    batch_minutes: int = 1  # minutes per transaction: 1 a READING a minute, more a READING_BATCH


def write_meter_folder(files: MeterFiles, out: Path, ca: LocalCA | None) -> Path:
    """Write ``out/METER.meter.toml``, ``METER.seed`` and ``METER.content`` (mode 0600) and ``METER.genesis``; with a
    ``ca`` also the device certificate ``METER.crt``/``.key`` (common name METER: the broker's MQTT user, which its
    ACL limits to the meter's own topics) and ``ca.crt`` to verify the broker and an https node. Returns the
    configuration's path."""
    m = files.meter
    out.mkdir(parents=True, exist_ok=True)
    write_private(out / f"{m}.seed", files.key_seed.hex())
    write_private(out / f"{m}.content", files.content_key.hex())
    (out / f"{m}.genesis").write_text(files.genesis.hex())
    tls_lines = ""
    if ca is not None:
        ca.issue(m, out=out)
        (out / "ca.crt").write_bytes(ca.ca_path.read_bytes())
        tls_lines = (
            'ca_file = "ca.crt"                # the CA: the broker must show a certificate it signed\n'
            f'cert_file = "{m}.crt"          # this device\'s certificate (common name {m}: its MQTT user)\n'
            f'key_file = "{m}.key"           # its private key (mode 0600)\n'
        )
    path = out / f"{m}.meter.toml"
    path.write_text(
        f'meter_id = "{m}"\n'
        f"member = {files.member}                    # the meter's index on its chain\n"
        f'serial = "{m}"                 # the SmartPi serial its measurements carry\n'
        f'key_file = "{m}.seed"          # Ed25519 seed (hex, mode 0600): signs readings and API requests\n'
        f'content_key_file = "{m}.content"  # its content key (hex, mode 0600): encrypts readings\n'
        f'genesis = "{m}.genesis"        # its NAN chain: chain id and start time\n'
        f'node = "{files.node}"   # its NAN node ({files.node_name})\n'
        + ('node_ca = "ca.crt"                # the CA its https node is verified against\n' if ca else "")
        + f'outbox = "{m}.outbox.sqlite"\n'
        "interval_min = 1                  # minutes per reading\n"
        f"batch_minutes = {files.batch_minutes}                 # minutes per transaction (1: a READING a minute; "
        "more: one READING_BATCH, each minute up to that many minutes later)\n"
        "\n[broker]\n"
        f'host = "{files.broker_host}"\n'
        f"port = {files.broker_port}\n"
        f'topic = "{files.topic}"\n' + tls_lines
    )
    return path
