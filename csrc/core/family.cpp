#include "family.h"

#include <stdexcept>

namespace distq {

const std::vector<std::string>& family_names() {
  static const std::vector<std::string> names = {"normal", "laplace", "cauchy", "student_t", "exponential", "gamma", "gpareto", "auto"};
  return names;
}

Family parse_family(const std::string& name) {
  const auto& names = family_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<Family>(i);
  }
  std::string known;
  for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("distq: unknown distribution '" + name + "'; expected one of: " + known);
}

Family body_family(Family family) { return family == Family::kAuto ? Family::kStudentT : family; }
Family tail_family(Family family) { return family == Family::kAuto ? Family::kGeneralizedPareto : family; }

}  // namespace distq
