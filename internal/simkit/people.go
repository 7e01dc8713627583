package simkit

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"
)

// RandFor returns a random source determined by seed and key alone, so each account's data
// is the same whatever order accounts are generated in.
func RandFor(seed uint64, key string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

var (
	firstNames = []string{"Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James",
		"Isabella", "William", "Mia", "Benjamin", "Charlotte", "Lucas", "Amelia", "Henry",
		"Harper", "Theodore", "Evelyn", "Jack", "Abigail", "Levi", "Emily", "Alexander",
		"Ella", "Jackson", "Elizabeth", "Mateo", "Camila", "Daniel", "Luna", "Michael",
		"Sofia", "Mason", "Avery", "Sebastian", "Mila", "Ethan", "Aria", "Logan", "Scarlett",
		"Owen", "Penelope", "Samuel", "Layla", "Jacob", "Chloe", "Asher", "Victoria", "Aiden",
		"José", "Zoë", "Siobhán", "Nguyễn", "Øyvind"}
	lastNames = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
		"Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson",
		"Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez",
		"Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
		"Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill",
		"Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
		"Mitchell", "Carter", "Roberts", "O'Brien", "Müller", "da Silva"}
	companyWords = []string{"Acme", "Summit", "Blue Ridge", "Harbor", "Pioneer", "Evergreen",
		"Keystone", "Lakeside", "Northstar", "Redwood", "Silver Oak", "Bright Smile",
		"Cornerstone", "Golden Gate", "Riverside", "Maple", "Horizon", "Cedar"}
	companyKinds = []string{"Dental", "Roofing", "Plumbing", "HVAC", "Law Group", "Realty",
		"Auto Repair", "Chiropractic", "Landscaping", "Med Spa", "Family Practice", "Vet Clinic"}
	cities = []struct{ City, State, Zip string }{{"Austin", "TX", "78701"}, {"Denver", "CO", "80202"},
		{"Tampa", "FL", "33602"}, {"Portland", "OR", "97201"}, {"Columbus", "OH", "43215"},
		{"Phoenix", "AZ", "85004"}, {"Raleigh", "NC", "27601"}, {"Boise", "ID", "83702"}}
	// Channels are lead sources as agencies name them.
	Channels = []string{"Google Ads", "Facebook Ads", "Organic Search", "Direct", "Referral",
		"Google Business Profile", "Yelp", "Email Campaign"}
	Campaigns = []string{"Spring Promo", "Brand Search", "Retargeting", "Local Services",
		"Summer Special", "New Patient Offer", "Free Estimate", "Holiday Sale"}
	Tags = []string{"new", "hot", "follow-up", "callback", "vip", "spanish", "quoted", "no-show"}
)

// Person is a fake contact.
type Person struct {
	FirstName, LastName, Email, Phone, Company string
	Street, City, State, Zip                   string
}

// NewPerson draws a person from r.
func NewPerson(r *rand.Rand) Person {
	f, l := Pick(r, firstNames), Pick(r, lastNames)
	c := Pick(r, cities)
	domain := Pick(r, []string{"gmail.com", "yahoo.com", "outlook.com", "icloud.com", "example.com"})
	local := strings.ToLower(strings.NewReplacer(" ", "", "'", "").Replace(f + "." + l))
	return Person{
		FirstName: f, LastName: l,
		Email:   fmt.Sprintf("%s%d@%s", local, r.IntN(1000), domain),
		Phone:   fmt.Sprintf("+1%03d555%04d", 200+r.IntN(800), r.IntN(10000)),
		Company: CompanyName(r),
		Street:  fmt.Sprintf("%d %s St", 1+r.IntN(9999), Pick(r, lastNames)),
		City:    c.City, State: c.State, Zip: c.Zip,
	}
}

// CompanyName draws a small-business name.
func CompanyName(r *rand.Rand) string {
	return Pick(r, companyWords) + " " + Pick(r, companyKinds)
}

// Pick draws one element.
func Pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// PickTags draws zero to three distinct tags.
func PickTags(r *rand.Rand) []string {
	n := r.IntN(4)
	out := make([]string, 0, n)
	for _, i := range r.Perm(len(Tags))[:n] {
		out = append(out, Tags[i])
	}
	return out
}

// TimeBetween draws a time in [from, to), truncated to the millisecond like vendor APIs.
func TimeBetween(r *rand.Rand, from, to time.Time) time.Time {
	span := to.Sub(from)
	if span <= 0 {
		return from
	}
	return from.Add(time.Duration(r.Int64N(int64(span)))).Truncate(time.Millisecond).UTC()
}
