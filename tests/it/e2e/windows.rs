//! The Windows release `.exe` under Wine against a real Prometheus (being written).
