//! The store: products, and the places its customers live.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::json::Obj;

/// One product on sale.
pub struct Product {
    /// `p-0001`.
    pub id: String,
    /// Stock-keeping unit.
    pub sku: String,
    /// Index into [`CATEGORIES`].
    pub category: u8,
    /// What shoppers read.
    pub name: String,
    /// The maker.
    pub brand: &'static str,
    /// Colour or size, for some products.
    pub variant: Option<&'static str>,
    /// Price in cents.
    pub price: i64,
    /// The product page.
    pub url: String,
    /// Its picture.
    pub image_url: String,
}

impl Product {
    /// Writes the Segment `Product` fields (product_id first, so a spoiled
    /// line breaks a declared, required property).
    pub fn write(&self, o: &mut Obj<'_>) {
        o.str("product_id", &self.id);
        o.str("sku", &self.sku);
        o.str("category", CATEGORIES[self.category as usize].name);
        o.str("name", &self.name);
        o.str("brand", self.brand);
        if let Some(v) = self.variant {
            o.str("variant", v);
        }
        o.money("price", self.price);
        o.str("url", &self.url);
        o.str("image_url", &self.image_url);
    }
}

/// A category of the catalogue.
pub struct Category {
    /// The category's name, as sent in events.
    pub name: &'static str,
    /// Its URL slug.
    pub slug: &'static str,
    /// Nouns its product names end with.
    pub nouns: &'static [&'static str],
    /// Whole-dollar price range.
    pub dollars: (i64, i64),
}

/// The categories of the store.
pub const CATEGORIES: &[Category] = &[
    Category {
        name: "Coffee",
        slug: "coffee",
        nouns: &[
            "Beans 1kg",
            "Espresso Roast",
            "Decaf Blend",
            "Cold Brew Pack",
            "Single Origin 250g",
            "Filter Papers",
        ],
        dollars: (6, 42),
    },
    Category {
        name: "Tea",
        slug: "tea",
        nouns: &[
            "Green Tea",
            "Earl Grey",
            "Chai Mix",
            "Matcha Tin",
            "Herbal Sampler",
            "Oolong 100g",
        ],
        dollars: (5, 38),
    },
    Category {
        name: "Kitchen",
        slug: "kitchen",
        nouns: &[
            "Enamel Mug",
            "Kettle",
            "French Press",
            "Burr Grinder",
            "Kitchen Scale",
            "Pour-Over Set",
        ],
        dollars: (9, 160),
    },
    Category {
        name: "Apparel",
        slug: "apparel",
        nouns: &[
            "T-Shirt",
            "Hoodie",
            "Cap",
            "Wool Socks",
            "Rain Jacket",
            "Apron",
        ],
        dollars: (12, 140),
    },
    Category {
        name: "Outdoor",
        slug: "outdoor",
        nouns: &[
            "Water Bottle",
            "Daypack",
            "Headlamp",
            "Camp Stove",
            "Thermos",
            "Picnic Blanket",
        ],
        dollars: (14, 220),
    },
    Category {
        name: "Books",
        slug: "books",
        nouns: &[
            "Brewing Guide",
            "Cookbook",
            "Field Notes",
            "Travel Journal",
            "Coffee Atlas",
            "Recipe Cards",
        ],
        dollars: (8, 45),
    },
    Category {
        name: "Beauty",
        slug: "beauty",
        nouns: &[
            "Hand Cream",
            "Lip Balm",
            "Face Oil",
            "Body Scrub",
            "Soap Bar",
            "Shampoo",
        ],
        dollars: (6, 64),
    },
    Category {
        name: "Home",
        slug: "home",
        nouns: &[
            "Candle",
            "Throw Blanket",
            "Vase",
            "Desk Lamp",
            "Cushion",
            "Doormat",
        ],
        dollars: (11, 180),
    },
    Category {
        name: "Electronics",
        slug: "electronics",
        nouns: &[
            "Earbuds",
            "Charger",
            "Speaker",
            "Smart Plug",
            "Power Bank",
            "Milk Frother",
        ],
        dollars: (15, 250),
    },
    Category {
        name: "Games",
        slug: "games",
        nouns: &[
            "Puzzle 1000pc",
            "Board Game",
            "Card Game",
            "Dice Set",
            "Chess Set",
            "Trivia Box",
        ],
        dollars: (9, 75),
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic", "Everyday", "Organic", "Deluxe", "Compact", "Vintage", "Nordic", "Urban", "Alpine",
    "Coastal", "Heritage", "Studio", "Morning", "Midnight", "Golden", "Wild",
];

const BRANDS: &[&str] = &[
    "Acme",
    "Northwind",
    "Bluebird",
    "Oak & Ash",
    "Kestrel",
    "Lumen",
    "Fieldhouse",
    "Tidewater",
];

const VARIANTS: &[&str] = &["Black", "White", "Sage", "Navy", "Small", "Medium", "Large"];

/// The fixed seed of the catalogue: the store stays the same whatever the
/// stream's seed, so flows that name product ids work on every stream.
const CATALOGUE_SEED: u64 = 0x4e75_6467_6543_6174;

/// Products per category.
const PER_CATEGORY: usize = 30;

/// The store's products, grouped by category: category `c` holds
/// `c * PER_CATEGORY .. (c + 1) * PER_CATEGORY`.
pub struct Catalogue {
    /// Every product.
    pub products: Vec<Product>,
}

impl Catalogue {
    /// Builds the store's catalogue, the same every time.
    pub fn new() -> Catalogue {
        let mut rng = ChaCha8Rng::seed_from_u64(CATALOGUE_SEED);
        let mut products = Vec::with_capacity(CATEGORIES.len() * PER_CATEGORY);
        for (c, cat) in CATEGORIES.iter().enumerate() {
            for _ in 0..PER_CATEGORY {
                let n = products.len() + 1;
                let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
                let noun = cat.nouns[rng.random_range(0..cat.nouns.len())];
                let name = format!("{adjective} {noun}");
                let dollars = rng.random_range(cat.dollars.0..=cat.dollars.1);
                let cents = [99, 99, 50, 0, 95, 49][rng.random_range(0..6)];
                let variant = rng
                    .random_bool(0.3)
                    .then(|| VARIANTS[rng.random_range(0..VARIANTS.len())]);
                let slug: String = name
                    .to_lowercase()
                    .chars()
                    .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                    .collect();
                products.push(Product {
                    id: format!("p-{n:04}"),
                    sku: format!("{}-{n:04}", cat.slug[..3].to_uppercase()),
                    category: c as u8,
                    name,
                    brand: BRANDS[rng.random_range(0..BRANDS.len())],
                    variant,
                    price: dollars * 100 + cents,
                    url: format!("https://shop.example/p/{slug}-{n}"),
                    image_url: format!("https://cdn.shop.example/p/p-{n:04}.jpg"),
                });
            }
        }
        Catalogue { products }
    }

    /// The product indices of category `c`.
    pub fn in_category(&self, c: usize) -> std::ops::Range<usize> {
        c * PER_CATEGORY..(c + 1) * PER_CATEGORY
    }
}

/// A home time zone with what goes with it.
pub struct Zone {
    /// IANA name.
    pub name: &'static str,
    /// The parsed zone, for local daytimes.
    pub tz: chrono_tz::Tz,
    /// ISO 3166 country code.
    pub country: &'static str,
    /// Language tag.
    pub locale: &'static str,
    /// Mobile numbers start with this (E.164).
    pub phone: &'static str,
    /// Digits after the prefix.
    pub phone_digits: u32,
    /// Who delivers there.
    pub carrier: &'static str,
    /// Relative share of customers.
    pub weight: u32,
}

/// Where customers live, weighted towards a US store with buyers abroad.
pub const ZONES: &[Zone] = &[
    Zone {
        name: "America/New_York",
        tz: chrono_tz::America::New_York,
        country: "US",
        locale: "en-US",
        phone: "+1212555",
        phone_digits: 4,
        carrier: "UPS",
        weight: 22,
    },
    Zone {
        name: "America/Chicago",
        tz: chrono_tz::America::Chicago,
        country: "US",
        locale: "en-US",
        phone: "+1312555",
        phone_digits: 4,
        carrier: "FedEx",
        weight: 14,
    },
    Zone {
        name: "America/Denver",
        tz: chrono_tz::America::Denver,
        country: "US",
        locale: "en-US",
        phone: "+1303555",
        phone_digits: 4,
        carrier: "USPS",
        weight: 4,
    },
    Zone {
        name: "America/Los_Angeles",
        tz: chrono_tz::America::Los_Angeles,
        country: "US",
        locale: "en-US",
        phone: "+1310555",
        phone_digits: 4,
        carrier: "UPS",
        weight: 14,
    },
    Zone {
        name: "Europe/London",
        tz: chrono_tz::Europe::London,
        country: "GB",
        locale: "en-GB",
        phone: "+447700",
        phone_digits: 6,
        carrier: "Royal Mail",
        weight: 12,
    },
    Zone {
        name: "Europe/Berlin",
        tz: chrono_tz::Europe::Berlin,
        country: "DE",
        locale: "de-DE",
        phone: "+49151",
        phone_digits: 8,
        carrier: "DHL",
        weight: 10,
    },
    Zone {
        name: "Europe/Paris",
        tz: chrono_tz::Europe::Paris,
        country: "FR",
        locale: "fr-FR",
        phone: "+336",
        phone_digits: 8,
        carrier: "Colissimo",
        weight: 6,
    },
    Zone {
        name: "Asia/Tokyo",
        tz: chrono_tz::Asia::Tokyo,
        country: "JP",
        locale: "ja-JP",
        phone: "+8190",
        phone_digits: 8,
        carrier: "Japan Post",
        weight: 8,
    },
    Zone {
        name: "Australia/Sydney",
        tz: chrono_tz::Australia::Sydney,
        country: "AU",
        locale: "en-AU",
        phone: "+614",
        phone_digits: 8,
        carrier: "Australia Post",
        weight: 6,
    },
    Zone {
        name: "America/Sao_Paulo",
        tz: chrono_tz::America::Sao_Paulo,
        country: "BR",
        locale: "pt-BR",
        phone: "+55119",
        phone_digits: 8,
        carrier: "Correios",
        weight: 4,
    },
];

/// First names, mixed across the store's markets.
pub const FIRST_NAMES: &[&str] = &[
    "Ana", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hiro", "Isla", "Jonas", "Kai",
    "Lena", "Mateo", "Nora", "Oliver", "Priya", "Quinn", "Rosa", "Sam", "Tomas", "Uma", "Victor",
    "Wen", "Yuki", "Zoe", "Amara", "Liam", "Sofia", "Noah", "Mia", "Lucas", "Hannah", "Ethan",
    "Aiko", "Lars", "Camille", "Diego", "Freya", "Omar", "Julia",
];

/// Last names, mixed across the store's markets.
pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Garcia",
    "Miller",
    "Brown",
    "Davis",
    "Martin",
    "Wilson",
    "Taylor",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Mueller",
    "Schmidt",
    "Fischer",
    "Weber",
    "Dubois",
    "Laurent",
    "Tanaka",
    "Sato",
    "Suzuki",
    "Kobayashi",
    "Silva",
    "Santos",
    "Oliveira",
    "Murphy",
    "Kelly",
    "Evans",
    "Hughes",
    "Patel",
    "Nguyen",
    "Rossi",
];
