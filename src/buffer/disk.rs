//! Placeholder: the disk buffer is being written.
