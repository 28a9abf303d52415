"""`tagd run`: the long-running service (scheduler, watcher, signals, systemd)."""
