"""Operations: structured logs and Prometheus metrics (traces come later)."""
