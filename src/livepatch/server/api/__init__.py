"""The HTTP API: an app factory, one router per area, JSON errors everywhere."""
