// The model's values are built on Pages (bitmaps, page size, the clock): importing the
// model brings them.
@_exported import Pages
