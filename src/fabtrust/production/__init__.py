"""Production runs: orders and sealed packages at the OEM, the provisioning station, and the
OEM's reconciliation of what stations report (DESIGN.md, "The main job")."""
