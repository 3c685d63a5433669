"""repabench: reproduce "What matters for Representation Alignment" (iREPA) end to end."""

__version__ = "0.1.0"
