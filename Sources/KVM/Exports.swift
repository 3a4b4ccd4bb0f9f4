// The KVM API speaks in dirty bitmaps and pages; users of KVM get them without a second import.
@_exported import Pages
