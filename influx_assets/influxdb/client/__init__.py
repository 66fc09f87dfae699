"""The InfluxDB client layer: no Dagster imports.

HTTP with retries and an error hierarchy split by what a retry can do (:mod:`.http`, :mod:`.retries`,
:mod:`.errors`); one transport per server API (:mod:`.v1`: ``/write`` + InfluxQL, :mod:`.v2`: influxdb-client,
Flux, ``/api/v2/delete``); pure query builders (:mod:`.influxql`, :mod:`.flux`); response parsers
(:mod:`.influxql_csv`, :mod:`.annotated_csv`) and the vectorized line-protocol encoder
(:mod:`.line_protocol`); :class:`.slice.MeasurementSlice`, the one object that says which points.
"""
