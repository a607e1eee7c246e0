//! The operator dashboard and alerting rules in `deploy/` against a real Prometheus (being written).
