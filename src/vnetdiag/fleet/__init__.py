"""The fleet: one agent per host on demand (over ssh), a coordinator that calls them.

protocol.py  versioned JSON lines, a closed list of operations (sans-I/O)
agent.py     ``vnetdiag agent``: the operations on one host, scoped to its namespaces
transport.py how an agent is reached: ``ssh DEST vnetdiag agent``, or a local process
hosts.py     hosts from an Ansible inventory (INI or YAML) or an ssh destination
coordinator.py  sessions to several agents, clock offsets, calls in parallel
diagnose.py  diagnose across hosts: one bundle per host, verdicts naming the host
"""
