"""Attribution: what a destination is called, who runs it, and where its server is."""

from phonehome.attribute.destination import Destination, Destinations

__all__ = ["Destination", "Destinations"]
