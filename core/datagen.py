"""Random orders like Flink's datagen connector, for the datagen CLI and the in-worker source."""

import math
import random
import time
from itertools import accumulate
from typing import Any

import orjson

from core.timefmt import format_time_ms

BIGINT_MAX = 2**63 - 1
MIN_PRICE_CENTS = 1_00
MAX_PRICE_CENTS = 500_00
# Seeded runs number their orders from SEED_BASE_STEP * (seed mod SEED_SLOTS + 1): readable
# numbers, a run of a billion rows per seed, and always below the wall-clock bases (>= 1.7e15).
SEED_BASE_STEP = 10**9
SEED_SLOTS = 10**6
# Buyers are weighted 1/rank**BUYER_SKEW: a few regulars, a long tail, so GROUP BY has leaders.
BUYER_SKEW = 0.5


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


FIRST_NAMES = _names("""
    José, María, Ana, Lucía, Sofía, Martín, Alejandro, Javier, Inés, Ángel, Andrés, Raúl, Iñigo,
    Begoña, Joaquín, Rocío, Mónica, Héctor, Óscar, Adrián, Tomás, Nicolás, Valentina, Camila,
    Mateo, Santiago, Ximena, Benjamín, Catalina, Fernanda, João, Gonçalo, Leonor, Thiago,
    Beatriz, Luís, Sebastião, Estêvão, Zoë, Amélie, Chloé, Élodie, Hélène, Léa, Céline, Renée,
    Françoise, Gaëlle, Noël, Jérôme, François, Étienne, Benoît, Loïc, Théo, Maël, Aurélien, Anaïs,
    Jürgen, Jörg, Günther, Uwe, Käthe, Lena, Lukas, Maximilian, Sophie, Anneliese, Dörte, Ulrike,
    Matthias, Wolfgang, Heike, Jens, Katrin, Sabine, Søren, Åsa, Øystein, Björn, Þórdís, Guðrún,
    Ólafur, Björk, Eiður, Halldór, Ásgeir, Sóley, Freyja, Magnús, Kjell, Mikkel, Astrid, Sigrid,
    Linnéa, Maja, Oskar, Henrik, Nils, Ingeborg, Torbjørn, Ragnhild, Łukasz, Małgorzata, Wojciech,
    Agnieszka, Paweł, Zofia, Krzysztof, Grzegorz, Bożena, Jędrzej, Ewa, Katarzyna, Jiří, Tomáš,
    Lucie, Petra, Kateřina, Vojtěch, Zdeněk, Dušan, Milena, Bogdan, Dragan, Ivana, Jelena, Nikola,
    Дмитрий, Анна, Сергей, Ольга, Иван, Наталья, Алексей, Татьяна, Anastasia, Mikhail, Yulia,
    Олена, Тарас, Oksana, Çağla, Ömer, Şule, Gökhan, Ayşe, Mehmet, Emre, Zeynep, Elif, Burak,
    İrem, Özge, Barış, Ecem, Tuğba, Γιώργος, Ελένη, Νίκος, Dimitris, Yannis, Zsófia, Gergő,
    Bálint, Ildikó, Réka, Ștefan, Ioana, Mihai, Andreea, Răzvan, Giulia, Lorenzo, Francesca,
    Matteo, Giuseppe, Chiara, Niccolò, Ludovica, Alessandro, Federica, Daan, Sanne, Bram, Femke,
    Joris, Maartje, Siobhán, Seán, Aoife, Niamh, Ciarán, Pádraig, Eoghan, Caoimhe, Oliver, Emma,
    Charlotte, James, Harry, Amelia, Isla, Grace, Jack, William, Olivia, Emily, Ruby, George,
    Thomas, Alice, Daniel, Samuel, An, Văn An, Thị Hương, Minh, Hùng, Thảo, Quang, Linh, Đức,
    Phương, Tuấn, Ngọc Anh, 伟, 芳, 娜, 秀英, 敏, 静, 丽, 强, 磊, 军, Wei, Fang, Jing, Hao, Mei,
    翔太, さくら, 陽菜, Haruto, Yūki, Sōta, Aoi, Hinata, Ren, Yui, Takeshi, Kenji, Akiko,
    민준, 서연, 지훈, 하은, Ji-woo, Seo-yeon, Min-jun, Hye-jin, محمد, فاطمة, أحمد, ليلى,
    Omar, Layla, Youssef,
    Fatima, Amira, Karim, Nour, Khalid, Zainab, Hassan, Rania, Tariq, נועה, David, Yael, Noa, Avi,
    Tamar, Eitan, Darius, Shirin, Parisa, Reza, Farhad, Nasrin, प्रिया, राहुल, Aarav, Priya, Ananya,
    Rohan, Vikram, Lakshmi, Arjun, Deepika, Sanjay, Kavya, Rajesh, Meera, Aditya, Ishaan, Saanvi,
    Karthik, Kiran, สมชาย, Somchai, Niran, Kanya, Malee, Putri, Budi, Wayan, Siti, Agus, Dewi,
    Maricel, Jericho, Chinwe, Oluwaseun, Adaeze, Chidi, Ngozi, Kwame, Ama, Kofi, Abena, Thabo,
    Lindiwe, Sipho, Nomvula, Amara, Zuri, Wanjiru, Tendai, Fatoumata, Moussa, Aminata, Mamadou,
    Ayodele, Folake, Yetunde, Emeka, Ifeoma, Makena, Njeri, Abebe, Tigist, Selam, Dawit, Siân,
    Rhys, Dafydd, Gwenllian, Kalani, Leilani, Keanu, Aroha, Ngaio, Wiremu, Hēmi, Jordi, Núria,
    Aitor, Itziar, Montserrat, Pau, Xavier, Väinö, Päivi, Jyrki, Aino, Eero, Kaisa, Tõnu, Jüri,
    Liis, Aušra, Jonas, Rūta, Mindaugas, Līga, Jānis, Kārlis, Arbër, Drita, Besnik, Žiga, Špela,
    Matevž, Luka, Željko, Snježana, Aram, Anahit, Nino, Giorgi, Mariam
""")

LAST_NAMES = _names("""
    Núñez, Ruiz, García, Fernández, López, Martínez, Sánchez, Pérez, Gómez, Díaz, Hernández,
    Álvarez, Jiménez, Muñoz, Romero, Navarro, Domínguez, Gutiérrez, Vázquez, Ibáñez, Peña,
    Castillo, Ortega, Rodríguez, Morales, de la Cruz, Zúñiga, Echeverría, Gonçalves, Magalhães,
    Simões, Araújo, Guimarães, Brandão, Sousa, Ribeiro, Carvalho, Fonseca, Lefèvre, Dubois,
    Moreau, Girard, Lemaître, Gagné, Bélanger, Côté, Bouchard, Leclerc, Fournier, Mercier,
    Rousseau, Deschênes, Thérien, Müller, Schröder, Weiß, Groß, Köhler, Schäfer, Böhm, Krüger,
    Hoffmann, Fischer, Wagner, Becker, Schulz, Zimmermann, Jäger, Fuchs, van der Berg, de Vries,
    Jansen, van Dijk, Bakker, Visser, de Jong, Janssens, Peeters, Brontë, Smith, Johnson,
    Williams, Brown, Taylor, Wilson, Davies, Evans, Thompson, Walker, Wright, Robinson, Hughes,
    Clarke, Turner, O'Connor, Ó Súilleabháin, Ní Dhomhnaill, MacCarthy, Byrne, MacLeod, Campbell,
    Fraser, ap Gruffydd, Llywelyn, Pritchard, Kierkegård, Ødegaard, Søndergaard, Jørgensen,
    Nielsen, Hansen, Åberg, Lindström, Johansson, Andersson, Björklund, Ström, Eriksson,
    Sigurðsson, Guðmundsdóttir, Jónsdóttir, Þorsteinsson, Halvorsen, Bjørnstad, Solberg,
    Wąsowski, Kowalski, Nowak, Wiśniewski, Wójcik, Kamiński, Lewandowski, Zieliński, Szymański,
    Woźniak, Dąbrowski, Kozłowski, Mazur, Krawczyk, Dvořák, Novák, Svoboda, Černý, Procházka,
    Kučera, Veselý, Němec, Jovanović, Petrović, Nikolić, Marković, Đorđević, Kovačević, Babić,
    Horvat, Zupančič, Krajnc, Иванов, Смирнова, Кузнецов, Попова, Соколов, Lebedev, Petrova,
    Volkov, Morozova, Шевченко, Kovalenko, Bondarenko, Tkachenko, Öztürk, Yılmaz, Kaya, Demir,
    Şahin, Çelik, Yıldız, Aydın, Özdemir, Arslan, Doğan, Kılıç, Çetin, Koç, Şimşek,
    Παπαδόπουλος, Οικονόμου, Georgiou, Papadakis, Nikolaidis, Karagiannis, Nagy, Kovács, Tóth,
    Szabó, Horváth, Varga, Molnár, Németh, Farkas, Popescu, Ionescu, Rădulescu, Stănescu,
    Dumitrescu, Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Greco, Gallo,
    Conti, De Luca, Mancini, Giordano, Lombardi, Moretti, D'Angelo, Nguyễn, Trần, Lê, Phạm,
    Hoàng, Huỳnh, Phan, Vũ, Võ, Đặng, Bùi, Đỗ, Hồ, Ngô, Dương, 王, 李, 张, 刘, 陈, 杨, 黄, 赵, 吴,
    周, Wang, Li, Zhang, Liu, Chen, Huang, Zhao, Zhou, Guo, Lin, Cheung, Wong, Chan, Leung, 佐藤,
    鈴木, 高橋, 田中, Satō, Suzuki, Takahashi, Tanaka, Watanabe, Itō, Yamamoto, Nakamura,
    Kobayashi, Katō, Yoshida, 김, 이, 박, Kim, Lee, Park, Choi, Jung, Kang, Yoon, Kwon, الهاشمي,
    Haddad, Khalil, Nasser, Al-Farsi, Mansour, Saleh, Hamdan, Aziz, El-Amin, Rahman, Qureshi,
    Abdullah, Darwish, Cohen, Levi, Mizrahi, Peretz, Friedman, Katz, Biton, כהן, Hosseini,
    Tehrani, Rahimi, Karimi, Moradi, Jafari, Sharma, Patel, Singh, Kumar, Gupta, Iyer, Reddy,
    Nair, Chatterjee, Banerjee, Mukherjee, Desai, Joshi, Mehta, Pillai, Menon, Krishnan, शर्मा,
    Kapoor, Malhotra, Verma, Agarwal, Subramanian, Chaiyaporn, Wongsawat, Saetang, Boonmee,
    Santoso, Wijaya, Hidayat, Kusuma, Siregar, Nasution, Dela Cruz, Reyes, Santos, Bautista,
    Villanueva, Aquino, Okafor, Adeyemi, Mensah, Okonkwo, Nwosu, Balogun, Adebayo, Mwangi,
    Otieno, Njoroge, Diallo, Traoré, Ndiaye, Diop, Keïta, Coulibaly, Touré, Dlamini, Nkosi,
    Khumalo, Ndlovu, Mokoena, Tesfaye, Bekele, Gebremedhin, Boateng, Asante, Owusu, Mutua, Banda,
    Phiri, Quispe, Mamani, Huamán, Condori, Cárdenas, Nascimento, da Silva, dos Santos, Oliveira,
    Pereira, Ferreira, Barbosa, Almeida, Cavalcanti, Virtanen, Mäkinen, Korhonen, Hämäläinen,
    Järvinen, Lehtonen, Tamm, Mägi, Kask, Kazlauskas, Jankauskas, Bērziņš, Kalniņš, Ozoliņš,
    Ngata, Te Whiti, Parata, Kahananui, Kealoha, Tuilagi, Fonoti, Petrosyan, Hovhannisyan,
    Grigoryan, Beridze, Kapanadze, Gelashvili, Javakhishvili
""")

MAX_BUYERS = len(FIRST_NAMES) * len(LAST_NAMES)


def price_text(cents: int) -> str:
    """`1234` -> `"12.34"`: the exact 2-decimal form of SPEC.md's price."""
    return f"{cents // 100}.{cents % 100:02d}"


def order_number_base(seed: int | None, wall_ms: int) -> int:
    """First order number of a run: from the seed when given, else from the wall clock."""
    if seed is not None:
        return SEED_BASE_STEP * (seed % SEED_SLOTS + 1)
    return wall_ms * 1000


def rows_due(elapsed_s: float, rows_per_second: float) -> int:
    """How many rows a source started `elapsed_s` ago owes at this rate (row i is due at i/rate)."""
    return max(0, math.floor(elapsed_s * rows_per_second) + 1)


def buyer_pool(rng: random.Random, size: int) -> list[tuple[str, str]]:
    """`size` distinct (first, last) name pairs drawn from the built-in lists."""
    if not 1 <= size <= MAX_BUYERS:
        raise ValueError(f"buyers must be between 1 and {MAX_BUYERS}, got {size}")
    picks = rng.sample(range(MAX_BUYERS), size)
    return [(FIRST_NAMES[p // len(LAST_NAMES)], LAST_NAMES[p % len(LAST_NAMES)]) for p in picks]


def encode(order: dict[str, Any]) -> tuple[bytes, bytes]:
    """Kafka key (the order number as decimal text) and value (compact JSON) of an order."""
    return str(order["order_number"]).encode(), orjson.dumps(order)


class OrderGenerator:
    """Orders of SPEC.md's schema; with a seed (and a start time) the sequence repeats exactly."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        buyers: int = 20,
        max_out_of_order_ms: int = 0,
        start_time_ms: int | None = None,
        rows_per_second: float = 10.0,
    ) -> None:
        if max_out_of_order_ms < 0:
            raise ValueError(f"max_out_of_order_ms must be >= 0, got {max_out_of_order_ms}")
        if not rows_per_second > 0:
            raise ValueError(f"rows_per_second must be > 0, got {rows_per_second}")
        self._rng = random.Random(seed)
        self.buyers = buyer_pool(self._rng, buyers)
        self._cum_weights = list(accumulate(1 / (r + 1) ** BUYER_SKEW for r in range(buyers)))
        self._base = order_number_base(seed, int(time.time() * 1000))
        self._max_out_of_order_ms = max_out_of_order_ms
        self._start_time_ms = start_time_ms
        self._rows_per_second = rows_per_second
        self.count = 0

    encode = staticmethod(encode)  # the module's encode, also reachable from a generator

    def clock_ms(self, now_ms: int) -> int:
        """The time of the next order before jitter: synthetic with a start time, else now_ms."""
        if self._start_time_ms is None:
            return now_ms
        return self._start_time_ms + int(self.count * 1000 / self._rows_per_second)

    def next_order(self, now_ms: int) -> dict[str, Any]:
        """The next order, JSON-able; now_ms is the wall clock (unused with a start time)."""
        number = self._base + self.count
        if number > BIGINT_MAX:
            raise OverflowError("order numbers exhausted the BIGINT range")
        first, last = self._rng.choices(self.buyers, cum_weights=self._cum_weights)[0]
        cents = self._rng.randint(MIN_PRICE_CENTS, MAX_PRICE_CENTS)
        order_ms = self.clock_ms(now_ms) - self._rng.randint(0, self._max_out_of_order_ms)
        self.count += 1
        return {
            "order_number": number,
            "price": price_text(cents),
            "buyer": {"first_name": first, "last_name": last},
            "order_time": format_time_ms(order_ms),
        }
