"""Stash: tags, markers, performers and studios written over its GraphQL API."""
