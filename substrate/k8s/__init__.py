"""Stand-ins for what Kubernetes and its cloud give the pods, run as host processes.

`dcs`: etcd in place of the API server that Patroni's Kubernetes DCS uses; `routing`: HAProxy in
place of the role Services; `s3`: an S3 server (moto behind stunnel) for backups.
"""
