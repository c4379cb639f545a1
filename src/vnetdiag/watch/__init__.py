"""vnetdiag watch: the loop that runs detectors on successive snapshots, the
recovery actions, their journal and the configuration file."""
