"""Per wake-up of a proxy, the time from epoll_wait returning to its first write, grouped by
(the descriptor first read -> the descriptor written), from a system-call trace:

    perf record -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p PID[,PID] -o sys.data -- sleep 20
    perf script -i sys.data -F pid,time,event,trace | python3 bench/syscall-wakes.py

Tracing adds a few microseconds per system call: compare two proxies traced the same way,
never a traced number with an untraced one."""
import collections, re, statistics, sys

WRITES = {1, 20, 44, 46}  # write, writev, sendto, sendmsg
READS = {0, 19, 45, 47}  # read, readv, recvfrom, recvmsg
WAITS = {232, 281, 441}  # epoll_wait, epoll_pwait, epoll_pwait2
line = re.compile(r'^\s*(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)\s*(.*)$')
state, entered = {}, {}
found = collections.defaultdict(list)
wakes, calls = collections.Counter(), collections.Counter()
for text in sys.stdin:
    m = line.match(text)
    if not m:
        continue
    pid, t, kind, nr, rest = m[1], float(m[2]), m[3], int(m[4]), m[5]
    s = state.setdefault(pid, {'wake': None, 'read': None, 'done': False})
    if kind == 'enter':
        entered[pid] = rest
        calls[pid] += 1
        continue
    args = entered.get(pid, '')
    fd = args.strip('(').split(',')[0] if args else '?'
    ret = rest.split('=')[-1].strip()
    if nr in WAITS:
        s.update(wake=t, read=None, done=False)
        wakes[pid] += 1
    elif s['wake'] is None:
        continue
    elif nr in READS and s['read'] is None and not ret.startswith('-'):
        s['read'] = fd
    elif nr in WRITES and not s['done']:
        found[(pid, str(s['read']), fd)].append((t - s['wake']) * 1e6)
        s['done'] = True
for pid in sorted(wakes):
    print(f'{pid}: {wakes[pid]} wake-ups, {calls[pid]} system calls')
    for (p, read, written), us in sorted(found.items()):
        if p == pid and len(us) >= 100:
            us.sort()
            print(f'  read fd {read} -> write fd {written}: n={len(us)} '
                  f'median {statistics.median(us):.1f} us, p90 {us[len(us) * 9 // 10]:.1f} us')
