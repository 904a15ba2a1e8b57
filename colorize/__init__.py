"""colorize: automatic image colorization with a U-Net on the Lab colour space, on Ray."""

__version__ = "0.1.0"
