-- One dead letter per task: record it unless this task already has (a redelivery, or a copy the sweep sent).
-- KEYS: the dead-letter stream, the task's marker ('{<stream>}:once:<task id>': the stream's slot on a cluster)
-- ARGV: marker seconds, stream maxlen (approximate), then the entry's field/value pairs
-- Returns the entry id, or '' when the task's letter was recorded before. Marker and entry go together, so a
-- worker killed in between leaves neither (its redelivery records the letter) and never a marker alone.
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) == false then return '' end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
