"""Settings, backend URLs and provenance: what every layer of lib may use."""
