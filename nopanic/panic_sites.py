#!/usr/bin/env python3
"""Lists the panic sites reachable from the probe's entry points in a linked ELF.

Usage: panic_sites.py ELF [ROOT...]   (roots default to probe_parse probe_session probe_frontend)

Reads `objdump -d -C` (arm-none-eabi-objdump or llvm-objdump), builds the call graph from every
direct call or branch whose target is another function (`bl`, `b.w`, conditional tail calls),
finds the functions from which the panic handler (`rust_begin_unwind`) is reachable, and prints
every call site, in a function reachable from a root, whose target is such a function and which
is not itself inside core's panic machinery. Each site is resolved to its inline chain
(file:line, innermost first) with addr2line. Indirect calls (`blx rN`) in reachable code are
reported too, since the walk cannot follow them, and so is every cycle in the call graph of the
reachable functions (recursion). Without recursion it also prints a static bound on each root's
stack use (prologue frames along the deepest call path; panic paths excluded). Sites are
counted once per innermost Kinglet source line (a call inlined into two callers is one site);
a call with no line of its own counts alone. Exit status 0; the last line is `panic sites: N`.
"""
import re
import shutil
import subprocess
import sys

HANDLER = "rust_begin_unwind"
# Functions that are part of the panic machinery itself: a call *to* one of them is a site,
# calls *inside* them are not.
MACHINERY = re.compile(
    r"^(core::panicking::|core::slice::index::|core::slice::copy_from_slice_impl::|"
    r"core::option::(expect|unwrap)_failed|core::result::unwrap_failed|core::fmt::|"
    r"core::str::slice_error_fail|core::cell::panic_|core::array::.*::try_from.*fail|"
    r"rust_begin_unwind$)"
)


def tool(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    sys.exit("panic_sites.py: none of %s found" % ", ".join(names))


def disassemble(elf):
    objdump = tool("arm-none-eabi-objdump", "llvm-objdump")
    out = subprocess.run(
        [objdump, "-d", "-C", "--no-show-raw-insn", elf],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    funcs = {}  # name -> list of (addr, mnemonic, target or None)
    cur = None
    head = re.compile(r"^([0-9a-f]+) <(.*)>:$")
    insn = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
    for line in out.splitlines():
        m = head.match(line)
        if m:
            cur = m.group(2)
            funcs.setdefault(cur, [])
            continue
        m = insn.match(line)
        if not m or cur is None:
            continue
        addr, mnem, rest = int(m.group(1), 16), m.group(2), m.group(3)
        t = re.search(r"<(.*)>\s*$", rest)
        target = None
        if t:
            name = re.sub(r"\+0x[0-9a-f]+$", "", t.group(1))
            if name != cur:
                target = name
        funcs[cur].append((addr, mnem, rest, target))
    return funcs


def reg_count(lst):
    """Registers in an objdump register list such as `r4, r5, lr` or `d8-d15`."""
    n = 0
    for item in lst.split(","):
        item = item.strip()
        m = re.match(r"^([a-z]+)(\d+)-[a-z]+(\d+)$", item)
        n += int(m.group(3)) - int(m.group(2)) + 1 if m else 1
    return n


def frame_bytes(ins):
    """Bytes a function's prologue takes from the stack (up to its first branch or call)."""
    total = 0
    for _, mnem, rest, _ in ins[:24]:
        m = re.match(r"^\{(.*)\}", rest)
        if mnem.startswith("push") and m:
            total += 4 * reg_count(m.group(1))
        elif mnem.startswith("stmdb") and rest.startswith("sp!") and "{" in rest:
            total += 4 * reg_count(rest[rest.index("{") + 1 : rest.index("}")])
        elif mnem.startswith("vpush") and m:
            size = 8 if m.group(1).strip().startswith("d") else 4
            total += size * reg_count(m.group(1))
        elif mnem.startswith("sub") and re.match(r"^sp,\s*(sp,\s*)?#", rest):
            total += int(re.search(r"#(\d+)", rest).group(1))
        elif mnem.startswith("sub") and rest.startswith("sp,"):
            print("warning: dynamic stack adjustment: %s %s" % (mnem, rest))
        elif re.match(r"^(b|cb|tb)", mnem):
            break
    return total


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    elf = sys.argv[1]
    roots = sys.argv[2:] or ["probe_parse", "probe_session", "probe_frontend"]
    funcs = disassemble(elf)
    calls = {f: {t for (_, _, _, t) in ins if t and t in funcs} for f, ins in funcs.items()}
    # Functions that can reach the handler.
    # (With LTO the handler is often inlined into `panic_fmt`: seed with both.)
    panics = {f for f in funcs if f == HANDLER or f.startswith("core::panicking::")}
    changed = True
    while changed:
        changed = False
        for f, ts in calls.items():
            if f not in panics and ts & panics:
                panics.add(f)
                changed = True
    # Functions reachable from the roots (not descending into the machinery).
    seen, todo = set(), [r for r in roots if r in funcs]
    while todo:
        f = todo.pop()
        if f in seen or MACHINERY.match(f):
            continue
        seen.add(f)
        todo.extend(calls[f])
    sites, indirect = [], []
    for f in sorted(seen):
        for addr, mnem, rest, target in funcs[f]:
            if target and target in panics and (MACHINERY.match(target) or target == HANDLER):
                sites.append((addr, f, target))
            elif re.match(r"^b(l)?x", mnem) and re.match(r"^(r\d+|ip|sl|fp)\b", rest):
                indirect.append((addr, f, rest))
    a2l = tool("arm-none-eabi-addr2line", "llvm-addr2line")
    def resolve(addr):
        chain = subprocess.run(
            [a2l, "-e", elf, "-i", "-f", "-C", "-p", hex(addr)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        frames = [re.sub(r" \(discriminator \d+\)", "", l.strip()) for l in chain.splitlines()]
        return [re.sub(r"\S*/(runtime|library|registry/src/[^/]+)/", r"\1/", l) for l in frames]

    keys = set()
    for addr, f, target in sites:
        print("%#x in %s -> %s" % (addr, f, target))
        frames = resolve(addr)
        for fr in frames:
            print("    " + fr)
        # The site's identity: the innermost Kinglet source line, so that one source site
        # inlined into two callers counts once; without a line, the function and target.
        ours = [re.search(r"(runtime/src/\S+:\d+)", fr) for fr in frames]
        ours = [m.group(1) for m in ours if m]
        keys.add(ours[0] if ours else "%s -> %s (%#x)" % (f, target, addr))
        if all(":?" in fr for fr in frames if " at " in fr):
            # The call has no line of its own (a shared panic block): name the branches to it.
            # The block that ends in the call starts after the previous branch or call.
            ins = funcs[f]
            k = next(i for i, x in enumerate(ins) if x[0] == addr)
            start = addr
            while k > 0 and not re.match(r"^(b|cb|tb)", ins[k - 1][1]):
                k -= 1
                start = ins[k][0]
            for a, _, rest, t in ins:
                m = re.match(r"^([0-9a-f]+) <", rest)
                if t is None and m and start <= int(m.group(1), 16) <= addr:
                    inner = [fr for fr in resolve(a) if ":?" not in fr][-3:]
                    print("    reached from %#x: %s" % (a, " <- ".join(inner) or "?"))
    for addr, f, rest in indirect:
        print("%#x in %s: indirect call %s (not followed)" % (addr, f, rest))
    # Recursion: a cycle in the call graph of the reachable functions (iterative DFS).
    cycles = []
    state = {}
    for root in sorted(seen):
        if root in state:
            continue
        stack = [(root, iter(sorted(calls[root] & seen)))]
        state[root] = 1
        path = [root]
        while stack:
            f, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[f] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(calls[nxt] & seen))))
                path.append(nxt)
    for c in cycles:
        print("recursion: " + " -> ".join(c))
    print("recursive cycles: %d" % len(cycles))
    # Static stack bound: each function's frame from its prologue (push / vpush / sub sp),
    # plus the deepest callee, over the (acyclic) graph without the panic machinery.
    if not cycles:
        memo = {}

        def bound(f):
            if f not in memo:
                memo[f] = 0  # (no cycles: only guards against a malformed graph)
                deepest = max((bound(c) for c in calls[f] & seen), default=0)
                memo[f] = frame_bytes(funcs[f]) + deepest
            return memo[f]

        for r in roots:
            if r in seen:
                print("stack bound: %s %d bytes" % (r, bound(r)))
    print("reachable functions: %d" % len(seen))
    print("panic call instructions: %d" % len(sites))
    print("panic sites (distinct source lines): %d" % len(keys))
    for k in sorted(keys):
        print("  site: " + k)
    print("panic sites: %d" % len(keys))


if __name__ == "__main__":
    main()
