"""The version of the twcore core distribution."""

__version__ = "0.1.0"
