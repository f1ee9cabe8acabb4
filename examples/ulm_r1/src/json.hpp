// json.hpp — a small JSON value, parser and writer for the ULM-R1 example's JSONL data files.
//
// Just what the data files need: null, bool, number (double), string (UTF-8 passed through, \uXXXX escapes decoded),
// array, object (insertion-ordered, so written files are stable and readable). parse_json throws corl::Error naming
// the source ("<file>:<line>" for JSONL) and the column of the first problem; read_jsonl reports every malformed line
// as "<file>:<line>: ...". Written numbers that are integers print without a fraction ("3", not "3.0").
// Format: RFC 8259 (https://www.rfc-editor.org/rfc/rfc8259), JSON Lines (https://jsonlines.org).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ulm {

class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;  // insertion order kept; keys unique (enforced by set())

  Json() = default;                                            // null
  Json(std::nullptr_t) {}                                      // null
  Json(bool b) : value_(b) {}                                  // NOLINT(google-explicit-constructor)
  Json(double x) : value_(x) {}                                // NOLINT
  Json(int x) : value_(static_cast<double>(x)) {}              // NOLINT
  Json(std::int64_t x) : value_(static_cast<double>(x)) {}     // NOLINT
  Json(const char* s) : value_(std::string(s)) {}              // NOLINT
  Json(std::string s) : value_(std::move(s)) {}                // NOLINT
  Json(std::string_view s) : value_(std::string(s)) {}         // NOLINT
  Json(Array a) : value_(std::move(a)) {}                      // NOLINT
  Json(Object o) : value_(std::move(o)) {}                     // NOLINT

  static Json array() { return Json(Array{}); }
  static Json object() { return Json(Object{}); }

  bool is_null() const { return std::holds_alternative<std::monostate>(value_); }
  bool is_bool() const { return std::holds_alternative<bool>(value_); }
  bool is_number() const { return std::holds_alternative<double>(value_); }
  bool is_string() const { return std::holds_alternative<std::string>(value_); }
  bool is_array() const { return std::holds_alternative<Array>(value_); }
  bool is_object() const { return std::holds_alternative<Object>(value_); }
  /// "null", "bool", "number", "string", "array" or "object" (for error messages).
  std::string_view type_name() const;

  // Typed access; each throws corl::Error "Json::as_X: value is a <type>, expected X" on a type mismatch.
  bool as_bool() const;
  double as_number() const;
  /// The number as an int64; throws unless it is integral and within +-2^53.
  std::int64_t as_int() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  /// Object member lookup: nullptr when absent (throws if this is not an object).
  const Json* find(std::string_view key) const;
  /// Object member that must exist: throws corl::Error "Json::at: missing key '<key>'".
  const Json& at(std::string_view key) const;
  /// Sets (replaces or appends) an object member; a null Json becomes an empty object first.
  Json& set(std::string_view key, Json value);
  /// Appends to an array; a null Json becomes an empty array first.
  Json& push_back(Json value);

  friend bool operator==(const Json& a, const Json& b) { return a.value_ == b.value_; }

 private:
  std::variant<std::monostate, bool, double, std::string, Array, Object> value_;
};

/// Parses one JSON document (surrounding whitespace allowed, nothing else). `source` names the input in errors,
/// e.g. "rows.jsonl:12"; the message then reads "<source>: column <c>: <problem>".
Json parse_json(std::string_view text, std::string_view source = "json");

/// Compact one-line serialisation (no spaces), strings escaped per RFC 8259; non-finite numbers are an error.
std::string dump_json(const Json& value);

/// Reads a JSON Lines file: one value per non-blank line. Missing file or a malformed line -> corl::Error
/// "<path>:<line>: column <c>: <problem>".
std::vector<Json> read_jsonl(const std::string& path);

/// Writes one compact value per line (overwrites `path`); throws corl::Error when the file cannot be written.
void write_jsonl(const std::string& path, const std::vector<Json>& rows);

}  // namespace ulm
