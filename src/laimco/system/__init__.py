"""The physical system: device, uplink channel, edge server (numpy, SI units, no torch)."""

from laimco.system.channel import Channel
from laimco.system.device import Device
from laimco.system.server import Server

__all__ = ["Channel", "Device", "Server"]
