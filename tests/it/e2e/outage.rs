//! Outages against real receivers: the receiver is killed and comes back on the same port and
//! data directory; optionally the agent is killed too, mid-outage, and restarted on its disk
//! buffer. Afterwards every sample is queryable, in order, nothing rejected.
