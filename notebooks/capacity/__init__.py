"""Analysis code of the capacity-planning notebooks, importable and unit-tested.

- `usl`: the Universal Scalability Law fit and its peak.
- `measures`: per-step throughput, percentiles, error rates, Little's law, the SLO search.
- `statsd`: a UDP statsd receiver and the parser of the server's HTTP metrics.
- `planning`: the sizing table for a target number of users.
- `platform` and `seeding`: start the platform with a configuration and give it users and documents.
- `runs`: run folders and the load-generator subprocesses.
"""
