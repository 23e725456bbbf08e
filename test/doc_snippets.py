#!/usr/bin/python3
"""test/doc_snippets.py SOURCE_DIR OUT_DIR CXX [compiler flags...] -- the docs.snippets test.

Checks that every ```cpp block in README.md and docs/*.md compiles:
  - a block contained verbatim in a docs/examples/*.cpp file is skipped (compiled and run as
    an example; test/readme_check.cmake keeps the two in sync);
  - a block whose first line starts with "// not compiled:" is skipped (say why after it);
  - a block with "int main(" is a full program: compiled as it is;
  - a block that defines a function at column 0 is put at namespace scope;
  - any other block becomes the body of a coroutine `corio::task<void>` function.
Each non-program block gets its own namespace in one translation unit that includes
<corio/corio.hpp> (plus <poll.h>, <cstdio>, <string> and std::chrono_literals); #line
directives make compiler errors point at the markdown file and line.

A block that uses names it does not declare gets them from HTML comments (invisible when the
markdown is rendered) on the lines just before its fence:
  <!-- snippet params: corio::tcp_stream& s, corio::event_loop& loop -->   (the body's parameters)
  <!-- snippet returns: corio::http::response -->                         (body's task<T>; then no co_return is added)
  <!-- snippet prelude: bool authorised(const corio::http::request&); --> (namespace scope, before)
Compiles with -fsyntax-only, in parallel; exit status 1 if any translation unit fails.
"""
import glob
import os
import re
import subprocess
import sys

FENCE = re.compile(r"^```cpp\n(.*?)^```", re.S | re.M)
DIRECTIVE = re.compile(r"^<!-- snippet (params|returns|prelude): (.*?) -->$")
FUNCTION_DEF = re.compile(r"^(?!co_return|return)[A-Za-z_][\w:<>,\s*&]*[\s*&>][\w:]+\(.*\)\s*(->\s*[\w:<> ]+)?\s*\{\s*$", re.M)
HEADER = """#include <corio/corio.hpp>

#include <poll.h>

#include <cstdio>
#include <string>

using namespace std::chrono_literals;
"""


def ctx_forces_body(context):
    return bool(context["params"] or context["returns"])


def blocks(source_dir):
    examples = [open(f).read() for f in sorted(glob.glob(os.path.join(source_dir, "docs/examples/*.cpp")))]
    docs = ["README.md"] + sorted(os.path.relpath(f, source_dir)
                                  for f in glob.glob(os.path.join(source_dir, "docs/*.md")))
    for doc in docs:
        text = open(os.path.join(source_dir, doc)).read()
        for m in FENCE.finditer(text):
            code = m.group(1)
            line = text.count("\n", 0, m.start()) + 2  # first line of the code
            context = {"params": "", "returns": "", "prelude": ""}
            before = text[:m.start()].rstrip("\n").split("\n")
            while before and DIRECTIVE.match(before[-1]):
                key, value = DIRECTIVE.match(before.pop()).groups()
                context[key] = value
            if any(code in example for example in examples):
                kind = "example"
            elif code.lstrip().startswith("// not compiled:"):
                kind = "skipped"
            elif "int main(" in code:
                kind = "program"
            elif ctx_forces_body(context):
                kind = "body"
            elif FUNCTION_DEF.search(code):
                kind = "namespace"
            else:
                kind = "body"
            yield doc, line, kind, code, context


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    source_dir, out_dir, cxx, flags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    os.makedirs(out_dir, exist_ok=True)
    combined = [HEADER]
    programs = []
    counts = {}
    for n, (doc, line, kind, code, ctx) in enumerate(blocks(source_dir)):
        counts[kind] = counts.get(kind, 0) + 1
        where = f'#line {line} "{os.path.join(source_dir, doc)}"\n'
        if kind == "program":
            programs.append(where + code)
        elif kind in ("namespace", "body"):
            part = [f"\n// {doc}:{line}\nnamespace snippet_{n} {{\n"]
            if ctx["prelude"]:
                part.append(ctx["prelude"] + "\n")
            if kind == "namespace":
                part.append(where + code)
            else:
                returns = ctx["returns"] or "void"
                part.append(f"[[maybe_unused]] corio::task<{returns}> body({ctx['params']}) {{\n")
                part.append(where + code)
                if not ctx["returns"]:
                    part.append("co_return;\n")
                part.append("}\n")
            part.append(f"}}  // namespace snippet_{n}\n")
            combined.append("".join(part))
    units = [os.path.join(out_dir, "snippets.cpp")]
    with open(units[0], "w") as f:
        f.write("".join(combined))
    for i, program in enumerate(programs):
        units.append(os.path.join(out_dir, f"program_{i}.cpp"))
        with open(units[-1], "w") as f:
            f.write(program)
    jobs = [(u, subprocess.Popen([cxx, *flags, "-fsyntax-only", u])) for u in units]
    failed = [u for u, job in jobs if job.wait() != 0]
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"doc snippets: {summary}; {len(units)} translation units, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
