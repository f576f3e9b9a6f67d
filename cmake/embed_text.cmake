# Writes OUT: a C++ source defining `std::string_view NAMESPACE::FUNCTION()` that returns the
# bytes of IN (a text asset, embedded in the binary so it needs no file at run time).
#   cmake -DIN=page.html -DOUT=page.cc -DNAMESPACE=ns -DFUNCTION=Page -P embed_text.cmake
file(READ "${IN}" content)
string(FIND "${content}" ")tgasset\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )tgasset\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed_text.cmake; do not edit.\n"
  "#include <string_view>\n\nnamespace ${NAMESPACE} {\n\nstd::string_view ${FUNCTION}() {\n"
  "  static constexpr char kText[] = R\"tgasset(${content})tgasset\";\n"
  "  return {kText, sizeof kText - 1};\n}\n\n}  // namespace ${NAMESPACE}\n")
file(RENAME "${OUT}.tmp" "${OUT}")
