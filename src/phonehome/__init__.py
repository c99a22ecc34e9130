"""phonehome: what does a phone tell the world about its owner, to whom, and where?"""

__version__ = "0.1.0"
