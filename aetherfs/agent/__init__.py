"""The agent daemon: keeps subscribed datasets live on a host and answers status queries.

Read `daemon.py` top-down for the task tree; `sync.py` does one channel move, `dataroot.py`
owns the on-disk layout, `api.py` and `grpc_api.py` expose the status surface.
"""
