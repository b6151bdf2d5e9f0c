"""The local stack behind `make dev`: the template's resources on moto, the real handlers behind a local API gateway."""
