package repository

import "fmt"

// PolicyKind names a version policy.
type PolicyKind string

// The version policies.
const (
	// PolicyLatest selects the highest complete version. It is the
	// default when a kernel has no policy.json.
	PolicyLatest PolicyKind = "latest"
	// PolicyPinned selects exactly Policy.Version, and nothing when that
	// version is not complete.
	PolicyPinned PolicyKind = "pinned"
)

// Policy is the content of a kernel's policy.json: {"policy": "latest"}
// or {"policy": "pinned", "version": N}.
type Policy struct {
	Policy  PolicyKind `json:"policy"`
	Version uint64     `json:"version,omitempty"`
}

// Validate checks that p is "latest" without a version, or "pinned" with
// a positive version.
func (p *Policy) Validate() error {
	switch p.Policy {
	case PolicyLatest:
		if p.Version != 0 {
			return &ManifestError{Field: "version", Reason: `not allowed with policy "latest"`}
		}
	case PolicyPinned:
		if p.Version == 0 {
			return &ManifestError{Field: "version", Reason: `required (a positive integer) with policy "pinned"`}
		}
	case "":
		return &ManifestError{Field: "policy", Reason: `required: "latest" or "pinned"`}
	default:
		return &ManifestError{Field: "policy", Reason: fmt.Sprintf(`unknown policy %q (known: "latest", "pinned")`, p.Policy)}
	}
	return nil
}

// ParsePolicy decodes a policy.json as strictly as ParseManifest decodes a
// manifest, and validates it. file names it in errors.
func ParsePolicy(file string, data []byte) (*Policy, error) {
	var p Policy
	if err := decodeStrict(file, data, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		err.(*ManifestError).File = file
		return nil, err
	}
	return &p, nil
}

// pick returns the version p picks among vs (sorted ascending by
// Number, invalid names last) and, when it picks none although versions
// exist, the reason.
func (p Policy) pick(id string, vs []Version) (uint64, error) {
	switch p.Policy {
	case PolicyPinned:
		for _, v := range vs {
			if v.Number == p.Version {
				if v.State == Complete {
					return v.Number, nil
				}
				return 0, fmt.Errorf("kernel %s: pinned version %d is %s: %w", id, p.Version, v.State, v.Err)
			}
		}
		return 0, fmt.Errorf("kernel %s: pinned version %d: %w", id, p.Version, ErrNotFound)
	default:
		var best uint64
		for _, v := range vs {
			if v.State == Complete && v.Number > best {
				best = v.Number
			}
		}
		return best, nil
	}
}
