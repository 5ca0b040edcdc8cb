from tests.fixtures.netns import netns_lan

__all__ = ["netns_lan"]
