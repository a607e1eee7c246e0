//! The Linux container image, built by `.ci/run` with buildah, run with podman (being written).
