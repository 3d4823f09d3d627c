"""Shared contracts: event types (``contracts.events``) and subjects/streams (``contracts.subjects``)."""
