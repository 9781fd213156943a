"""An answer's stream on its way to the client: its events parsed once (events.py), the layers
that watch it (observer.py) and the one loop that moves it (relay.py)."""
