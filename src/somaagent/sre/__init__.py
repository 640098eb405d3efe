"""SRE tooling: SLOs over Prometheus (``sre.slo``), chaos experiments and k6 load tests."""
