#include "engine/base/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/base/error.hpp"

namespace vkt {

MappedFile::MappedFile(const std::filesystem::path& path, const std::string& what_to_pass) {
  const std::string where = path.string();
  int descriptor = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0)
    throw UserError("cannot open " + where + ": " + std::strerror(errno), "check that the path exists and is readable");
  struct stat status {};
  if (::fstat(descriptor, &status) != 0 || !S_ISREG(status.st_mode)) {
    ::close(descriptor);
    throw UserError(where + " is not a regular file", what_to_pass);
  }
  size_ = static_cast<uint64_t>(status.st_size);
  if (size_ == 0) {  // mmap refuses a zero length; the readers report the empty file themselves
    ::close(descriptor);
    return;
  }
  void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, descriptor, 0);
  int map_errno = errno;
  ::close(descriptor);  // the mapping keeps the file alive
  if (mapped == MAP_FAILED)
    throw UserError("cannot memory-map " + where + ": " + std::strerror(map_errno),
                    "is the file on a filesystem that supports mmap?");
  data_ = static_cast<const uint8_t*>(mapped);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace vkt
