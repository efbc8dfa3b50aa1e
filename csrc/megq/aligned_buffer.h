// 64-byte aligned, zero-initialised storage with 64 bytes of slack after the
// end: megq-owned buffers (packed weights, scratch) may be over-read by a
// vector load near their end; caller-owned (numpy) buffers never are.
#ifndef MEGQ_ALIGNED_BUFFER_H_
#define MEGQ_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace megq {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { resize(bytes); }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Discards the contents; the new storage is zeroed.
  void resize(size_t bytes) {
    std::free(data_);
    const size_t total = ((bytes + 64) + 63) / 64 * 64;
    data_ = static_cast<unsigned char*>(std::aligned_alloc(64, total));
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_, 0, total);
    size_ = bytes;
  }
  // Grows (zeroed) if smaller than `bytes`; keeps the storage otherwise.
  void reserve(size_t bytes) {
    if (data_ == nullptr || bytes > size_) resize(bytes);
  }

  template <typename T>
  T* as() { return reinterpret_cast<T*>(data_); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data_); }
  size_t size() const { return size_; }

 private:
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace megq

#endif  // MEGQ_ALIGNED_BUFFER_H_
