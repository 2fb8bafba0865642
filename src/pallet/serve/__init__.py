"""The online inference server: one data plane, every protocol on one port."""
