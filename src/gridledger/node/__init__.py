"""Nodes on a network (the edge): ordering backends (in-process, etcd), local etcd clusters, the node API."""
