// lincheck: checks a jepsen/ history (JSON Lines) of register operations for
// linearizability, key by key, and prints a JSON report.
//
//   lincheck --history run/history.jsonl [--read-modes linearizable,lease]
//
// Each line is one event: {"type": "invoke"|"ok"|"fail"|"info", "process":
// <int>, "f": "read"|"write"|"cas", "key": <string>, "value": <int, null, or
// [from, to] for cas>, "mode": <read mode>, "time": <ns>}. A process has at
// most one operation open; its next event after an invoke completes it.
// `fail` means the operation had no effect (a failed compare-and-set, an
// error the server proved harmless); `info` means its outcome is unknown.
// Other functions (append, ...) are ignored.
//
// Exit status: 0 linearizable, 1 not linearizable, 2 the search gave up on
// some key (--max-states) or the history could not be read.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "util/linearizability.h"

namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

struct KeyOps {
  std::vector<tally::RegisterOp> ops;
  std::vector<size_t> line;  // the invoke's line number, per op
};

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

const Value* Field(const Struct& s, const char* name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

// A register value: null (absent) is 0; written values are positive.
bool Number(const Value* v, uint64_t* out) {
  if (v == nullptr || v->kind_case() == Value::kNullValue) {
    *out = 0;
    return true;
  }
  if (v->kind_case() != Value::kNumberValue || v->number_value() < 0) {
    return false;
  }
  *out = static_cast<uint64_t>(v->number_value());
  return true;
}

struct Open {
  std::string key;
  tally::RegisterOp op;
  size_t line;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Checks a register history for linearizability, key by key"};
  std::string history_path;
  std::string read_modes = "linearizable,lease";
  size_t max_states = 5'000'000;
  app.add_option("--history", history_path, "history.jsonl")->required();
  app.add_option("--read-modes", read_modes,
                 "reads checked (comma separated; \"all\" for every mode)");
  app.add_option("--max-states", max_states,
                 "give up on a key after this many search states (0: never)");
  CLI11_PARSE(app, argc, argv);

  const bool all_modes = read_modes == "all";
  std::set<std::string> modes;
  for (absl::string_view m : absl::StrSplit(read_modes, ',')) {
    modes.emplace(m);
  }

  std::ifstream in(history_path);
  if (!in) {
    std::cerr << "lincheck: cannot open " << history_path << "\n";
    return 2;
  }
  std::map<std::string, KeyOps> keys;
  std::map<int64_t, Open> open;  // per process
  size_t counts[3] = {0, 0, 0};  // ok, fail, info
  std::string line;
  size_t lineno = 0;
  for (; std::getline(in, line); ++lineno) {
    if (line.empty()) continue;
    Struct ev;
    if (!google::protobuf::util::JsonStringToMessage(line, &ev).ok()) {
      std::cerr << "lincheck: line " << lineno + 1 << ": not JSON\n";
      return 2;
    }
    const Value* f = Field(ev, "f");
    const Value* type = Field(ev, "type");
    const Value* process = Field(ev, "process");
    if (f == nullptr || type == nullptr || process == nullptr) continue;
    const std::string& fn = f->string_value();
    if (fn != "read" && fn != "write" && fn != "cas") continue;
    const int64_t p = static_cast<int64_t>(process->number_value());
    const Value* time = Field(ev, "time");
    const uint64_t t =
        time ? static_cast<uint64_t>(time->number_value()) : lineno;
    const std::string& ty = type->string_value();
    if (ty == "invoke") {
      const Value* mode = Field(ev, "mode");
      if (fn == "read" && !all_modes &&
          (mode == nullptr || !modes.count(mode->string_value()))) {
        continue;  // a read this run does not check
      }
      Open o;
      o.key = Field(ev, "key") ? Field(ev, "key")->string_value() : "";
      o.line = lineno;
      o.op.invoked = t;
      o.op.id = lineno + 1;
      const Value* v = Field(ev, "value");
      bool good = true;
      if (fn == "write") {
        o.op.kind = tally::RegisterOp::Kind::kWrite;
        good = Number(v, &o.op.value);
      } else if (fn == "cas") {
        o.op.kind = tally::RegisterOp::Kind::kCas;
        good = v && v->list_value().values_size() == 2 &&
               Number(&v->list_value().values(0), &o.op.expected) &&
               Number(&v->list_value().values(1), &o.op.value);
      } else {
        o.op.kind = tally::RegisterOp::Kind::kRead;
      }
      if (!good) {
        std::cerr << "lincheck: line " << lineno + 1 << ": bad value\n";
        return 2;
      }
      open[p] = o;
      continue;
    }
    auto it = open.find(p);
    if (it == open.end()) continue;  // completion of an unchecked read
    Open o = std::move(it->second);
    open.erase(it);
    if (ty == "fail") {
      ++counts[1];
      continue;
    }
    if (ty == "ok") {
      ++counts[0];
      o.op.completed = t;
      if (o.op.kind == tally::RegisterOp::Kind::kRead &&
          !Number(Field(ev, "value"), &o.op.value)) {
        std::cerr << "lincheck: line " << lineno + 1 << ": bad read value\n";
        return 2;
      }
    } else {
      ++counts[2];  // info: unknown outcome
    }
    KeyOps& k = keys[o.key];
    k.ops.push_back(o.op);
    k.line.push_back(o.line);
  }
  // Operations still open at the end of the history have unknown outcomes.
  for (auto& [p, o] : open) {
    ++counts[2];
    KeyOps& k = keys[o.key];
    k.ops.push_back(o.op);
    k.line.push_back(o.line);
  }

  size_t ops = 0;
  std::string invalid;
  std::string unknown;
  for (const auto& [key, k] : keys) {
    ops += k.ops.size();
    tally::RegisterCheck c = tally::CheckRegister(k.ops, max_states);
    if (c.verdict == tally::Linearizable::kUnknown) {
      if (!unknown.empty()) unknown += ",";
      unknown += JsonString(key);
    } else if (c.verdict == tally::Linearizable::kNo) {
      const tally::LinearizabilityViolation& v = *c.violation;
      std::string prefix;
      // The end of the partial order: the operations just before the one
      // that cannot be placed.
      const size_t from = v.prefix.size() > 20 ? v.prefix.size() - 20 : 0;
      for (size_t n = from; n < v.prefix.size(); ++n) {
        const size_t i = v.prefix[n];
        if (!prefix.empty()) prefix += ",";
        prefix += std::to_string(k.line[i]);
      }
      if (!invalid.empty()) invalid += ",";
      invalid += "{\"key\":" + JsonString(key) +
                 ",\"op_line\":" + std::to_string(k.line[v.op]) +
                 ",\"prefix_lines\":[" + prefix +
                 "],\"message\":" + JsonString(v.message) + "}";
    }
  }
  const char* verdict = !invalid.empty()   ? "false"
                        : !unknown.empty() ? "\"unknown\""
                                           : "true";
  std::cout << "{\"checker\":\"linearizable\",\"valid\":" << verdict
            << ",\"keys\":" << keys.size() << ",\"ops\":" << ops
            << ",\"ok\":" << counts[0] << ",\"fail\":" << counts[1]
            << ",\"info\":" << counts[2] << ",\"anomalies\":[" << invalid
            << "],\"unknown_keys\":[" << unknown << "]}\n";
  if (!invalid.empty()) return 1;
  return unknown.empty() ? 0 : 2;
}
