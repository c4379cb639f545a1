"""vnetdiag: find where and why packets are lost or delayed in virtualized Linux networks."""

__version__ = "0.1.0"
