import os, time, sys, json
# Cumulative CPU seconds per kind of process, every 0.5 s, until killed.
TICKS = os.sysconf('SC_CLK_TCK')
seen = {}  # pid -> (kind, seconds)
def kind_of(pid, comm):
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode(errors='replace')
    except Exception:
        cmd = ''
    if comm == 'postgres':
        for k in ('autovacuum worker', 'autovacuum launcher', 'walwriter', 'checkpointer', 'background writer', 'logical replication', 'archiver', 'stats'):
            if k in cmd:
                return 'pg:' + k
        if cmd.startswith('postgres: ') and '(' in cmd:
            return 'pg:backend'
        return 'pg:postmaster/other'
    for k in ('offpeak-worker', 'offpeak-scheduler', 'provider-sim', 'offpeak-bench', 'beam.smp'):
        if k in comm or k in cmd.split(' ')[0]:
            return k
    return None
out = open(sys.argv[1], 'w')
while True:
    now = time.time()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            stat = open(f'/proc/{pid}/stat').read()
        except Exception:
            continue
        o, c = stat.find('('), stat.rfind(')')
        comm = stat[o+1:c]
        f = stat[c+2:].split(' ')
        secs = (int(f[11]) + int(f[12])) / TICKS
        if pid not in seen:
            k = kind_of(pid, comm)
            if k is None:
                seen[pid] = (None, 0)
                continue
            seen[pid] = (k, secs)
        k, _ = seen[pid]
        if k:
            seen[pid] = (k, secs)
    tot = {}
    for k, s in seen.values():
        if k:
            tot[k] = tot.get(k, 0) + s
    out.write(json.dumps({'t': now, 'cpu': tot}) + '\n'); out.flush()
    time.sleep(0.5)
