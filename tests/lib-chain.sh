# Sourced after lib.sh by the tests of snapshots, clones and layer chains
# (issue 10, docs/store.md): the helpers they share.
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
"$PYTHON" -c 'import nbd, cryptography' 2> /dev/null ||
    fail "python3-libnbd or python3-cryptography is not installed (scripts/install-deps.sh installs them)"
NBDIO="$PYTHON $SRC_DIR/tests/tools/nbd-io.py"
MiB=1048576

json() { "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# vinfo VOL EXPR: EXPR over `volume info VOL --json` (d is the object).
vinfo() { "$CRYPTVOL" volume info "$1" --json | json "$2"; }
# uri EXPORT: the NBD URI of an export (VOL or VOL@SNAP) of $CVD_NBD.
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
vol_dir() { echo "$CVD_DIR/data/volumes/$1"; }
# snaps VOL: its snapshots' names, oldest first, on one line.
snaps() {
    "$CRYPTVOL" snapshot list "$1" --json | json '" ".join(
        (s["name"] if isinstance(s, dict) else s)
        for s in (d["snapshots"] if isinstance(d, dict) else d))'
}
# nbd_sum EXPORT: sha256 of every byte of an export.
nbd_sum() { $NBDIO sum "$CVD_NBD" "$1" || fail "reading $1 over NBD"; }
# layers VOL: the layer files its manifest lists, oldest first (the last is
# the head), one per line, as paths.
layers() {
    "$PYTHON" - "$(vol_dir "$1")" <<'PY'
import json, os, sys
d = sys.argv[1]
for l in json.load(open(os.path.join(d, "chain")))["layers"]:
    print(os.path.join(d, "layer-%06d" % l["id"]))
PY
}
# layer_of VOL SNAP: the layer file of a snapshot.
layer_of() {
    "$PYTHON" - "$(vol_dir "$1")" "$2" <<'PY'
import json, os, sys
d, snap = sys.argv[1:]
for l in json.load(open(os.path.join(d, "chain")))["layers"]:
    if l.get("snapshot") == snap:
        print(os.path.join(d, "layer-%06d" % l["id"]))
        break
else:
    sys.exit("%s: no layer for snapshot %s in the manifest" % (d, snap))
PY
}
# layers_match_manifest VOL: the layer files on disk are exactly those the
# manifest lists (leftovers of a cut-short change are removed at open).
layers_match_manifest() {
    local want have
    want=$(layers "$1" | sort)
    have=$(find "$(vol_dir "$1")" -maxdepth 1 -name 'layer-*' | sort)
    [ "$want" = "$have" ] ||
        fail "$1: layer files on disk ($(echo $have)) are not those of the manifest ($(echo $want))"
}
# merging VOL: true when its manifest marks a layer as being merged.
merging() {
    "$PYTHON" - "$(vol_dir "$1")" <<'PY'
import json, os, sys
m = json.load(open(os.path.join(sys.argv[1], "chain")))
sys.exit(0 if any(l.get("state") == "merging" for l in m["layers"]) else 1)
PY
}
# volume_key HEADER PASSFILE: the volume key of a LUKS header (a volume's
# `header` file, or an image), hex, from cryptsetup.
volume_key() {
    cryptsetup luksDump --batch-mode --dump-volume-key --key-file "$2" "$1" 2> "$T/vk.err" |
        $XTS_CHECK dump-key || fail "cryptsetup luksDump --dump-volume-key $1: $(cat "$T/vk.err")"
}
# wait_job VOL KIND: waits (60 s) for VOL's job KIND to finish; fails if it
# failed.  A job already finished counts.
wait_job() {
    local i st
    for ((i = 0; i < 300; i++)); do
        st=$(vinfo "$1" '(d.get("job") or {}).get("kind", "") + " " + (d.get("job") or {}).get("state", "") + " " + str((d.get("job") or {}).get("error", ""))')
        case "$st" in
            "$2 Completed"*) return 0 ;;
            "$2 Failed"*) fail "$1: the $2 job failed: ${st#* Failed }" ;;
        esac
        sleep 0.2
    done
    fail "$1: the $2 job is not done after 60 s (job: $st)"
}
# world FILE: what a refused command must not change: every volume (name,
# state, size, parent, its snapshots), and the names of the files under
# the data dir's volumes/ with the sha256 of each manifest and header.
world() {
    {
        "$CRYPTVOL" volume list --json | json '"\n".join(
            "%s %s %s %s" % (v["name"], v["state"], v["size"], v.get("parent"))
            for v in d)'
        local v
        for v in $("$CRYPTVOL" volume list --json | json '" ".join(v["name"] for v in d)'); do
            echo "$v snapshots: $(snaps "$v" 2> /dev/null || echo '(none)')"
        done
        (cd "$CVD_DIR/data/volumes" && find . -type f | sort &&
            find . -type f \( -name chain -o -name header \) | sort | xargs -r sha256sum)
    } > "$1"
}
# unchanged BEFORE WHAT: the world is as BEFORE says.
unchanged() {
    world "$T/world.after"
    diff "$1" "$T/world.after" >&2 || fail "$2 changed something (diff above)"
}
# random_file PATH SIZE
random_file() { head -c "$2" /dev/urandom > "$1"; }
# luks_geom HEADER: "VERSION DATA_OFFSET SECTOR_SIZE" as cryptsetup reads it.
luks_geom() {
    local v
    v=$(cryptsetup luksDump "$1" | sed -n 's/^Version:[[:space:]]*//p')
    if [ "$v" = 2 ]; then
        cryptsetup luksDump --dump-json-metadata "$1" |
            json '"2 %s %s" % (d["segments"]["0"]["offset"], d["segments"]["0"]["sector_size"])'
    elif [ "$v" = 1 ]; then
        echo "1 $(($(cryptsetup luksDump "$1" | sed -n 's/^Payload offset:[[:space:]]*//p') * 512)) 512"
    else
        fail "$1: cryptsetup luksDump sees no LUKS header"
    fi
}
# luks_read IMG PASSFILE OUT: the plaintext of a LUKS image as cryptsetup
# gives it: through dm-crypt (cryptsetup open --readonly) where
# device-mapper works, else with the volume key cryptsetup dumps for that
# passphrase and the independent AES-XTS (xts-check.py decrypt).  Sets
# LUKS_READ_HOW to say which.
luks_read() {
    local img=$1 pf=$2 out=$3 name v off ss key
    cryptsetup open --test-passphrase --key-file "$pf" "$img" 2> "$T/cs.err" ||
        fail "cryptsetup does not open $img with $(basename "$pf"): $(cat "$T/cs.err")"
    name=cvtest-$$-$RANDOM
    if cryptsetup open --readonly --key-file "$pf" "$img" "$name" 2> "$T/cs.err"; then
        on_exit "cryptsetup close $name"
        dd if="/dev/mapper/$name" of="$out" bs=1M status=none
        cryptsetup close "$name"
        LUKS_READ_HOW="cryptsetup open (dm-crypt)"
        return
    fi
    grep -qi 'device-mapper\|dm_mod' "$T/cs.err" ||
        fail "cryptsetup open $img: $(cat "$T/cs.err")"
    read -r v off ss <<< "$(luks_geom "$img")"
    key=$(volume_key "$img" "$pf")
    $XTS_CHECK decrypt "$img" --key "$key" --data-offset "$off" --sector-size "$ss" \
        --length $(($(stat -c %s "$img") - off)) --out "$out" ||
        fail "xts-check cannot decrypt $img"
    LUKS_READ_HOW="cryptsetup's volume key and xts-check (no device-mapper here)"
}
# nbd_read EXPORT OUT: every byte of an export.
nbd_read() {
    $NBDIO read "$CVD_NBD" "$1" 0 "$($NBDIO size "$CVD_NBD" "$1")" "$2" ||
        fail "reading $1 over NBD"
}
