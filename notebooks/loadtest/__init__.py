"""Load generators of the capacity notebooks: a Locust workload and an open-loop generator."""
