#ifndef TALLY_CMD_KVCTL_OUTPUT_H_
#define TALLY_CMD_KVCTL_OUTPUT_H_

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"

namespace tally::kvctl {

// Exit codes (the --help footer says the same).
inline constexpr int kExitOk = 0;
inline constexpr int kExitNo = 1;
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitOther = 4;

inline std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok())
    return "{}";
  return out;
}

// `s` for one column of a tab-separated line: backslash, tab, newline and
// carriage return as \\, \t, \n and \r.
inline std::string Column(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

// Rows printed under a header, each column as wide as its widest cell
// (cells escaped as by Column), two spaces apart.
class Table {
 public:
  explicit Table(std::vector<std::string> header) {
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()), 0);
      for (size_t i = 0; i < row.size(); ++i) {
        width[i] = std::max(width[i], Column(row[i]).size());
      }
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        const std::string cell = Column(row[i]);
        line += cell;
        if (i + 1 < row.size()) line.append(width[i] - cell.size() + 2, ' ');
      }
      line.erase(line.find_last_not_of(' ') + 1);  // an empty last cell
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// The first key after every key that starts with `prefix` ("" if none:
// the prefix is empty or all 0xff bytes).
inline std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) {
    prefix.pop_back();
  }
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

// Prints the error and returns its exit code.
inline int Fail(const absl::Status& st) {
  std::cerr << "kvctl: " << absl::StatusCodeToString(st.code()) << ": "
            << st.message() << "\n";
  switch (st.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return kExitNo;
    case absl::StatusCode::kInvalidArgument:
      return kExitBadInput;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
      return kExitUnavailable;
    default:
      return kExitOther;
  }
}

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_OUTPUT_H_
