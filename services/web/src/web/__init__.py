"""Mängelmelder's web front: citizen pages and the staff console. A client of the services'
public HTTP APIs only: it owns no data, no schema and no Kafka."""
