#!/bin/bash
# Bare runsc with the root's --file-access=exclusive (Sandpit's default) beside --file-access=shared, on a
# host overlay over the base template: what shared costs inside the sandbox (imports, a walk of /usr,
# spawns, stat, dd, small files; medians of 5, ms) and whether files the host writes into the root are
# seen inside. Shared is what writing uploads on the host would need. Usage: npm run bench:file-access
set -u
# The base template as the test run builds it (npm test builds it once).
TEMPLATES=${SANDPIT_TEMPLATES_DIR:-/var/lib/sandpit-test/templates}
[ -f "$TEMPLATES/base/template.json" ] || { echo "no base template in $TEMPLATES: run npm test first" >&2; exit 1; }
LOWER=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['layers'][0])" "$TEMPLATES/base/template.json")
W=$(mktemp -d /var/tmp/sandpit-bench-file-access-XXXXXX)
cleanup() {
  for mode in exclusive shared; do
    runsc --root="$W/state" delete -force "fa$mode" >/dev/null 2>&1
    umount "$W/$mode/merged" 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT
for mode in exclusive shared; do
  D=$W/$mode; mkdir -p $D/upper $D/work $D/merged $D/bundle
  mount -t overlay overlay -o lowerdir=$LOWER,upperdir=$D/upper,workdir=$D/work $D/merged
  cat > $D/bundle/config.json <<J
{"ociVersion":"1.0.2","process":{"args":["/bin/sleep","infinity"],"env":["PATH=/usr/local/bin:/usr/bin:/bin","LANG=C.UTF-8"],"cwd":"/root","user":{"uid":0,"gid":0}},
 "root":{"path":"$D/merged","readonly":false},"hostname":"fa",
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
 "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}
J
  runsc --root=$W/state --platform=systrap --network=none --overlay2=none --file-access=$mode run -detach -bundle=$D/bundle fa$mode >/dev/null 2>&1 </dev/null
done
X() { runsc --root=$W/state --platform=systrap --network=none exec "$@"; }
cat > $W/exclusive/merged/root/t.py <<'PY'
import os,time,subprocess,sys
def t(f,n=5):
    ts=[]
    for _ in range(n):
        a=time.perf_counter(); f(); ts.append((time.perf_counter()-a)*1000)
    ts.sort(); return ts[len(ts)//2]
imp=lambda: subprocess.run([sys.executable,'-c','import json,email.parser,http.client,asyncio,decimal,sqlite3,xml.dom.minidom'])
walk=lambda: sum(len(f) for _,_,f in os.walk('/usr'))
def spawn():
    for _ in range(20):
        p=os.posix_spawn('/bin/true',['/bin/true'],os.environ); os.waitpid(p,0)
def stat():
    for _ in range(2000): os.stat('/usr/lib/python3/dist-packages')
def dd():
    subprocess.run(['dd','if=/dev/zero','of=/root/dd.bin','bs=1M','count=200','conv=fsync'],capture_output=True)
def small():
    for i in range(300):
        with open('/root/s%d'%i,'w') as f: f.write('x')
    for i in range(300): os.unlink('/root/s%d'%i)
print(' '.join('%s=%.1f'%(k,t(f)) for k,f in [('python_imports_ms',imp),('walk_usr_ms',walk),('spawn20_ms',spawn),('stat2000_ms',stat),('dd200MB_ms',dd),('small300_ms',small)]))
PY
cp $W/exclusive/merged/root/t.py $W/shared/merged/root/t.py
for r in 1 2; do for mode in exclusive shared; do echo "$mode: $(X fa$mode python3 /root/t.py)"; done; done
# coherence: the sandbox reads a file, the host rewrites it, the sandbox reads again
for mode in exclusive shared; do
  echo one > $W/$mode/merged/root/c.txt
  a=$(X fa$mode cat /root/c.txt); X fa$mode ls /root/new.txt >/dev/null 2>&1
  echo "two two" > $W/$mode/merged/root/c.txt; echo new > $W/$mode/merged/root/new.txt
  b=$(X fa$mode cat /root/c.txt); c=$(X fa$mode cat /root/new.txt 2>&1)
  echo "$mode coherence: before='$a' after-host-rewrite='$b' new-file='$c'"
done
