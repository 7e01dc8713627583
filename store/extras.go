package store

import (
	"reflect"
	"sort"
	"strings"

	"golang.org/x/oauth2"
)

// stringExtras returns the token's string extras: the vendor metadata kept with a grant
// (companyId, locationId, userType, scope, ...). oauth2.Token offers no way to list its
// extras, so this reads the unexported raw field by reflection; it understands the two
// shapes x/oauth2 and WithExtra produce (a JSON map and url.Values). Anything that looks
// like a credential is dropped, whatever its name.
func stringExtras(tok *oauth2.Token) map[string]string {
	out := map[string]string{}
	if tok == nil {
		return out
	}
	raw := reflect.ValueOf(tok).Elem().FieldByName("raw")
	if !raw.IsValid() {
		return out
	}
	for raw.Kind() == reflect.Interface || raw.Kind() == reflect.Pointer {
		if raw.IsNil() {
			return out
		}
		raw = raw.Elem()
	}
	if raw.Kind() != reflect.Map || raw.Type().Key().Kind() != reflect.String {
		return out
	}
	iter := raw.MapRange()
	for iter.Next() {
		k, v := iter.Key().String(), iter.Value()
		for v.Kind() == reflect.Interface && !v.IsNil() {
			v = v.Elem()
		}
		var s string
		switch {
		case v.Kind() == reflect.String:
			s = v.String()
		case v.Kind() == reflect.Slice && v.Type() == reflect.TypeOf([]string(nil)) && v.Len() > 0: // url.Values
			s = v.Index(0).String()
		default:
			continue
		}
		if secretKey(k) || s == "" || s == tok.AccessToken || s == tok.RefreshToken {
			continue
		}
		out[k] = s
	}
	return out
}

// secretKey reports extras never to keep: tokens, codes, secrets, and the standard fields
// the store keeps in their own columns.
func secretKey(k string) bool {
	l := strings.ToLower(k)
	for _, s := range []string{"token", "secret", "password", "code", "assertion"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	switch l {
	case "expires_in", "expiresin", "expiry":
		return true
	}
	return false
}

// subjectKeys are the extras that name who granted access, in order of preference.
var subjectKeys = []string{"subject", "sub", "userId", "user_id", "email", "companyId", "locationId"}

func subjectOf(meta map[string]string) string {
	for _, k := range subjectKeys {
		if v := meta[k]; v != "" {
			return v
		}
	}
	return ""
}

func scopesOf(meta map[string]string) []string {
	s := strings.Fields(strings.ReplaceAll(meta["scope"], ",", " "))
	sort.Strings(s)
	return s
}
