"""Persistence behind one small async interface (``RecordStore``), so that the endpoints
never know which backend holds the data."""
